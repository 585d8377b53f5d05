"""The extension machinery (A1111's extension system, without globals): finding extensions
(discovery), installing and updating them (git, install), their preload.py flags (preload), loading
them and their scripts (manager), the per-tab script runners (runner) and what the front ends use
(service). The A1111 API extensions program against stays at A1111's paths: modules.scripts,
modules.script_callbacks, modules.extensions, modules.shared.
"""
