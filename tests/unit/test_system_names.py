"""`evaluate -m NAME=PATH`: row labels may hold spaces and brackets; paths that contain '=' still work."""

from probtalk3d_cli.evaluation.systems import split_name


def test_names_with_spaces_and_brackets(tmp_path):
    assert split_name("ProbTalk3D (tiny)=runs/pred") == ("ProbTalk3D (tiny)", "runs/pred")
    assert split_name("vae=runs/v=1") == ("vae", "runs/v=1")
    odd = tmp_path / "a=b.pt"
    odd.write_bytes(b"")
    assert split_name(str(odd)) == (None, str(odd))  # an existing file is a path, '=' or not
    assert split_name(" lead=x") == (None, " lead=x") and split_name("=x") == (None, "=x")
    assert split_name("demo") == (None, "demo")
