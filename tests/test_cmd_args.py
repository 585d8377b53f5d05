import pytest

from modules import cmd_args
from modules.paths import Paths


def test_defaults_bind_localhost_on_7860():
    args = cmd_args.parse_args([])
    assert cmd_args.server_address(args) == ("127.0.0.1", 7860)
    assert cmd_args.is_localhost_only(args)


def test_listen_binds_all_interfaces():
    args = cmd_args.parse_args(["--listen", "--port", "9000"])
    assert cmd_args.server_address(args) == ("0.0.0.0", 9000)
    assert not cmd_args.is_localhost_only(args)


def test_server_name_overrides_listen():
    args = cmd_args.parse_args(["--listen", "--server-name", "127.0.0.2"])
    assert cmd_args.server_address(args)[0] == "127.0.0.2"


def test_nowebui_implies_api_and_port_7861():
    args = cmd_args.parse_args(["--nowebui"])
    assert args.api and cmd_args.server_address(args) == ("127.0.0.1", 7861)


@pytest.mark.parametrize("argv, fragment", [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--port", "99999"], "--port 99999 is not a TCP port"),
    (["--port", "abc"], "invalid int value"),
    (["--api-auth", "nopassword"], "--api-auth expects user:password"),
    (["--precision", "quarter"], "invalid choice"),
])
def test_bad_flags_give_one_clear_line(argv, fragment):
    with pytest.raises(cmd_args.ArgumentError) as e:
        cmd_args.parse_args(argv)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_credentials_allow_colons_in_password():
    assert cmd_args.parse_credentials("a:b:c, d:e") == [("a", "b:c"), ("d", "e")]


def test_a1111_flags_exist():
    args = cmd_args.parse_args(["--ckpt-dir", "/x", "--vae-dir", "/v", "--embeddings-dir", "/e", "--lora-dir", "/l",
                                "--use-cpu", "all", "--device-id", "1", "--no-half", "--no-half-vae", "--medvram",
                                "--lowvram", "--disable-all-extensions", "--enable-insecure-extension-access",
                                "--gradio-auth", "u:p", "--api", "--skip-install"])
    assert args.use_cpu == ["all"] and args.device_id == 1 and args.no_half and args.api


def test_paths_follow_flags(tmp_path):
    args = cmd_args.parse_args(["--data-dir", str(tmp_path), "--ckpt-dir", str(tmp_path / "more")])
    paths = Paths.from_args(args)
    assert paths.config_file == tmp_path / "config.json"
    assert paths.ckpt_dirs[0] == tmp_path / "models" / "Stable-diffusion"
    assert tmp_path / "more" in paths.ckpt_dirs
    paths.check_writable()
    assert (tmp_path / "outputs").is_dir()


def test_unwritable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    paths = Paths.from_args(cmd_args.parse_args(["--data-dir", str(blocker / "sub")]))
    with pytest.raises(PermissionError, match="is not writable"):
        paths.check_writable()
