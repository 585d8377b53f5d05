"""What A1111's module paths (modules.shared, modules.sd_models, modules.devices, launch...) hand to
extensions, written over this web UI's engine: the facades at those paths import from here.

Every name that depends on the running application looks it up, when it is read, through the
extension scope that is current (modules.script_callbacks.current_scope): nothing here holds state
of its own. Nothing inside the project imports these modules except the facades.
"""
