"""The bad-input matrix: every case exits 1 (bad input) or 2 (usage) with ONE line on stderr that names the
problem and the fix, shows no traceback, and leaves no output file, folder or temporary file behind.

Cases are command lines with placeholders: {B} the folder of bad inputs (conftest), {OUT} a fresh output folder,
{PRED} / {PRIOR} the session's tiny stage-2 / stage-1 runs, {DATA} the session's synthetic corpus.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers.reliability import error_line, has_words, snapshot, temporaries

# (id, command line, exit code, words naming the problem, words naming the fix)
CASES = [
    # --- audio (generate) ---
    ("audio-missing", "generate -m {PRED} {B}/missing.wav -o {OUT}", 1, ["missing.wav", "does not exist"],
     ["pass audio files"]),
    ("audio-empty", "generate -m {PRED} {B}/empty.wav -o {OUT}", 1, ["empty.wav", "empty (0 bytes)"],
     ["pass a real recording"]),
    ("audio-directory", "generate -m {PRED} {B}/folder.wav -o {OUT}", 1, ["folder.wav", "holds no audio files"],
     ["pass a folder with audio"]),
    ("audio-one-sample", "generate -m {PRED} {B}/one_sample.wav -o {OUT}", 1, ["one_sample.wav", "0.000 s long"],
     ["at least 0.085 s", "longer recording"]),
    ("audio-corrupt-header", "generate -m {PRED} {B}/corrupt_header.wav -o {OUT}", 1,
     ["corrupt_header.wav", "could not be decoded"], ["pass a readable"]),
    ("audio-nan", "generate -m {PRED} {B}/nan.wav -o {OUT}", 1, ["nan.wav", "nan or infinite"], ["re-export"]),
    ("audio-text-renamed-wav", "generate -m {PRED} {B}/text.wav -o {OUT}", 1, ["text.wav", "could not be decoded"],
     ["pass a readable"]),
    ("audio-shorter-than-a-frame", "generate -m {PRED} {B}/short.wav -o {OUT}", 1, ["short.wav", "0.037 s long"],
     ["longer recording"]),
    ("audio-stdin-empty", "generate -m {PRED} - -o {OUT}", 1, ["stdin is empty"], []),
    # --- styles ---
    ("style-unknown-subject", "generate -m {PRED} {B}/good.wav -o {OUT} --subject ZZZ", 1,
     ["unknown subject 'zzz'"], ["m001", "w001"]),
    ("style-unknown-emotion", "generate -m {PRED} {B}/good.wav -o {OUT} --emotion joy", 1,
     ["unknown emotion 'joy'"], ["use one of neutral"]),
    ("style-unknown-intensity", "generate -m {PRED} {B}/good.wav -o {OUT} --intensity extreme", 1,
     ["unknown intensity 'extreme'"], ["use low, medium, high"]),
    ("style-neutral-high", "generate -m {PRED} {B}/good.wav -o {OUT} --emotion neutral --intensity high", 1,
     ["neutral with intensity high"], ["--allow-unseen-styles"]),
    ("styles-csv-dotdot-name", "generate -m {PRED} --styles {B}/styles_escape.csv -o {OUT}", 1,
     ["'../../escaped'"], ["inside the output folder", "no '..'"]),
    ("styles-csv-absolute-name", "generate -m {PRED} --styles {B}/styles_absolute.csv -o {OUT}", 1,
     ["line 2", "name"], ["relative path inside the output folder"]),
    ("styles-csv-not-text", "generate -m {PRED} --styles {B}/good.wav -o {OUT}", 1, ["not utf-8 text"],
     ["pass a csv"]),
    ("styles-csv-no-audio-column", "generate -m {PRED} --styles {B}/styles_header.csv -o {OUT}", 1,
     ["needs a header row with an 'audio' column"], ["columns: audio"]),
    # --- checkpoints ---
    ("ckpt-prior-for-predictor", "generate -m {PRIOR} {B}/good.wav -o {OUT}", 1,
     ["is a prior checkpoint", "predictor"], ["train-pred"]),
    ("ckpt-predictor-for-prior", "train-pred --data {DATA} --prior {PRED} --out {OUT} --device cpu", 1,
     ["is a predictor checkpoint", "prior checkpoint is needed"], ["train-prior"]),
    ("ckpt-truncated", "generate -m {B}/truncated.pt {B}/good.wav -o {OUT}", 1, ["truncated or corrupt"],
     ["re-download or re-train"]),
    ("ckpt-empty", "generate -m {B}/empty.pt {B}/good.wav -o {OUT}", 1, ["empty (0 bytes)"], ["use another one"]),
    ("ckpt-not-a-checkpoint", "generate -m {B}/text.wav {B}/good.wav -o {OUT}", 1, ["truncated or corrupt"],
     ["re-download or re-train"]),
    ("ckpt-newer-format", "generate -m {B}/newer.pt {B}/good.wav -o {OUT}", 1, ["format version 99", "newer"],
     ["upgrade probtalk3d"]),
    ("ckpt-lightning-given-directly", "generate -m {B}/lightning.ckpt {B}/good.wav -o {OUT}", 1,
     ["pytorch-lightning checkpoint"], ["import-official"]),
    ("ckpt-missing", "generate -m {B}/missing.pt {B}/good.wav -o {OUT}", 1, ["does not exist"], ["check the path"]),
    ("ckpt-folder-without-checkpoint", "generate -m {B}/dots {B}/good.wav -o {OUT}", 1,
     ["holds no best.pt or last.pt"], ["pass a checkpoint file"]),
    ("ckpt-prior-truncated", "train-pred --data {DATA} --prior {B}/truncated.pt --out {OUT} --device cpu", 1,
     ["truncated or corrupt"], ["re-download or re-train"]),
    ("import-official-not-a-checkpoint", "import-official --stage pred {B}/text.wav --out {OUT}/x.pt", 1,
     ["not a readable pytorch checkpoint"], ["download it again"]),
    ("import-official-our-checkpoint", "import-official --stage pred {B}/small.pt --out {OUT}/x.pt", 1,
     ["no lightning state_dict"], ["pass an official"]),
    ("import-official-bad-stage", "import-official --stage nope {B}/lightning.ckpt --out {OUT}/x.pt", 1,
     ["--stage", "'nope'"], ["prior or pred"]),
    # --- configuration ---
    ("config-unknown-key", "train-prior --data {DATA} --out {OUT} --config {B}/unknown_key.yaml", 1,
     ["unknown config key 'train_prior.epochz'"], ["valid keys of 'train_prior'", "epochs"]),
    ("config-unknown-section", "train-prior --data {DATA} --out {OUT} --config {B}/unknown_section.yaml", 1,
     ["unknown config section 'trainer'"], ["valid sections"]),
    ("config-wrong-type", "train-prior --data {DATA} --out {OUT} --config {B}/wrong_type.yaml", 1,
     ["train_prior.epochs", "'three'"], ["must be an integer"]),
    ("config-negative-batch-size", "train-prior --data {DATA} --out {OUT} --config {B}/negative_batch.yaml", 1,
     ["train_prior.batch_size", "-4"], ["must be greater than 0"]),
    ("config-negative-lr", "train-prior --data {DATA} --out {OUT} --config {B}/negative_lr.yaml", 1,
     ["train_prior.lr", "-0.001"], ["must be greater than 0"]),
    ("flag-negative-batch-size", "train-pred --data {DATA} --prior {PRIOR} --out {OUT} --batch-size -2", 1,
     ["train_pred.batch_size", "-2"], ["must be greater than 0"]),
    ("set-negative-lr", "train-pred --data {DATA} --prior {PRIOR} --out {OUT} --set train_pred.lr=-1e-5", 1,
     ["train_pred.lr"], ["must be greater than 0"]),
    ("config-not-yaml", "train-prior --data {DATA} --out {OUT} --config {B}/broken.yaml", 1,
     ["broken.yaml", "not valid yaml"], ["fix the file"]),
    ("config-not-a-mapping", "train-prior --data {DATA} --out {OUT} --config {B}/list.yaml", 1,
     ["top level must be a mapping", "list"], ["sections"]),
    ("config-missing", "train-prior --data {DATA} --out {OUT} --config {B}/missing.yaml", 1,
     ["missing.yaml", "does not exist"], ["pass an existing yaml file"]),
    ("set-unknown-key", "generate -m {PRED} {B}/good.wav -o {OUT} --set generate.nope=1", 1,
     ["unknown config key 'generate.nope'"], ["valid keys of 'generate'"]),
    ("precision-unknown", "train-prior --data {DATA} --out {OUT} --precision fp16", 1,
     ["train_prior.precision", "'fp16'"], ["one of fp32, bf16"]),
    # --- devices and outputs ---
    ("device-cuda-missing", "generate -m {PRED} {B}/good.wav -o {OUT} --device cuda", 1,
     ["cuda is not available"], ["--device cpu"]),
    ("device-cuda-missing-training", "train-prior --data {DATA} --out {OUT} --device cuda", 1,
     ["cuda is not available"], ["--device cpu"]),
    ("device-unknown", "to-vertices {B}/params.npy --out {OUT} --flame-model demo --device tpu", 1, ["tpu"],
     ["cpu"]),
    ("out-is-a-file-generate", "generate -m {PRED} {B}/good.wav -o {B}/good.wav", 1,
     ["good.wav is an existing file"], ["pass a folder to --out"]),
    ("out-under-a-file-generate", "generate -m {PRED} {B}/good.wav -o {B}/good.wav/sub", 1,
     ["good.wav is a file, not a folder"], ["choose another --out"]),
    ("out-under-a-file-to-vertices", "to-vertices {B}/params.npy --out {B}/good.wav/v --flame-model demo", 1,
     ["good.wav is a file, not a folder"], ["choose another --out"]),
    ("out-under-a-file-render", "render {B}/params.npy --out {B}/good.wav/x.mp4 --flame-model demo", 1,
     ["good.wav is a file, not a folder"], ["choose another output folder"]),
    ("out-is-a-file-train", "train-prior --data {DATA} --out {B}/good.wav", 1, ["good.wav is a file"],
     ["give a directory"]),
    ("out-under-a-file-evaluate", "evaluate -m {PRED} --data {DATA} --flame-model demo -o {B}/good.wav/e", 1,
     ["good.wav is a file, not a folder"], ["choose another --out"]),
    # --- data folders ---
    ("data-no-clips", "train-prior --data {B}/data_empty --out {OUT}", 1, ["holds no clips"],
     ["probtalk3d preprocess"]),
    ("data-missing", "train-prior --data {B}/no_such_data --out {OUT}", 1, ["does not exist"],
     ["probtalk3d preprocess"]),
    ("data-corrupt-clip", "train-prior --data {B}/data_corrupt --out {OUT}", 1,
     ["1 clip(s)", "cannot be trained on", "truncated"], ["delete them or rerun `probtalk3d preprocess`"]),
    ("data-mismatched-pair", "train-pred --data {B}/data_mismatch --prior {PRIOR} --out {OUT}", 1,
     ["0.12 s", "mismatched pair"], ["delete them or rerun"]),
    ("data-wav-missing", "train-pred --data {B}/data_nowav --prior {PRIOR} --out {OUT}", 1,
     ["with no clips (param .npy and .wav)"], ["fix the split files or preprocess"]),
    ("split-absent-subject", "train-prior --data {B}/data_absent --out {OUT}", 1, ["names subject(s) w009"],
     ["fix the split files"]),
    ("evaluate-no-clips", "evaluate -m {PRED} --data {B}/data_empty --flame-model demo -o {OUT}", 1,
     ["holds no clips"], ["preprocess"]),
    ("evaluate-unknown-split", "evaluate -m {PRED} --data {DATA} --flame-model demo -o {OUT} --split nosuch", 1,
     ["unknown split 'nosuch'"], ["use test, val, train"]),
    ("evaluate-bad-split-file", "evaluate -m {PRED} --data {DATA} --flame-model demo -o {OUT} --split {B}/text.wav",
     1, ["text.wav line 1"], ["clip key", "subject id"]),
    ("evaluate-prior-checkpoint", "evaluate -m {PRIOR} --data {DATA} --flame-model demo -o {OUT}", 1,
     ["is a prior checkpoint"], ["train-pred"]),
    ("evaluate-empty-predictions", "evaluate --predictions {B}/dots --data {DATA} --flame-model demo -o {OUT}", 1,
     ["holds no file for any of the"], ["names must start with the clip key"]),
    ("mead-missing-folders", "preprocess mead --animation-dir {B}/nope --audio-dir {B}/nope --out {OUT}", 1,
     ["--animation-dir", "does not exist"], ["pass the folder"]),
    ("mead-no-clips", "preprocess mead --animation-dir {B}/mead_anim --audio-dir {B}/mead_audio --out {OUT}", 1,
     ["no clips found"], ["expected"]),
    ("synthetic-out-is-a-file", "preprocess synthetic --out {B}/good.wav", 1, ["good.wav is a file"],
     ["choose a folder"]),
    ("synthetic-other-corpus", "preprocess synthetic --out {DATA} --seed 5", 1, ["made with other settings"],
     ["choose an empty --out folder"]),
    ("vertices-no-clips", "preprocess vertices --data {B}/data_empty --flame-model demo", 1, ["holds no clips"],
     ["probtalk3d preprocess"]),
    # --- params / motion files (to-vertices, render, export) ---
    ("params-wrong-shape", "to-vertices {B}/shape400.npy --out {OUT} --flame-model demo", 1,
     ["[1, 10, 400]"], ["expected [1, t, 403] params"]),
    ("params-complex-dtype", "to-vertices {B}/complex.npy --out {OUT} --flame-model demo", 1,
     ["dtype complex64"], ["real-valued numeric array"]),
    ("params-string-dtype", "render {B}/strings.npy --out {OUT}/x.mp4 --flame-model demo", 1, ["dtype <u1"],
     ["real-valued numeric array"]),
    ("params-object-array", "export {B}/objects.npy --out {OUT}/x.csv", 1, ["not a plain .npy array"],
     ["numeric .npy file"]),
    ("params-nan", "to-vertices {B}/nan.npy --out {OUT} --flame-model demo", 1, ["nan or infinite"],
     ["regenerate"]),
    ("params-inf", "export {B}/inf.npy --out {OUT}/x.csv", 1, ["nan or infinite"], ["regenerate"]),
    ("motion-wrong-columns", "render {B}/motion52.npy --out {OUT}/x.mp4 --flame-model demo", 1, ["[10, 52]"],
     ["[t, 53] motion"]),
    ("params-not-npy", "to-vertices {B}/good.wav --out {OUT} --flame-model demo", 1, ["is not a .npy file"],
     ["pass [1, t, 403] params"]),
    ("params-missing", "export {B}/missing.npy --out {OUT}/x.glb --flame-model demo", 1, ["does not exist"],
     ["check"]),
    ("params-name-dotdot", "to-vertices {B}/dots --out {OUT} --flame-model demo --format obj", 1,
     ["no usable name", "'..'"], ["rename the file"]),
    ("render-audio-not-audio", "render {B}/params.npy --out {OUT}/x.mp4 --flame-model demo --audio {B}/text.wav", 1,
     ["could not be decoded"], ["pass a readable"]),
    ("render-odd-size", "render {B}/params.npy --out {OUT}/x.mp4 --flame-model demo --size 33", 1, ["got 33"],
     ["even number of pixels"]),
    ("export-unknown-suffix", "export {B}/params.npy --out {OUT}/x.xyz", 1, ["suffix .xyz"], ["pass --format"]),
    # --- FLAME model files ---
    ("flame-empty-path", "to-vertices {B}/params.npy --out {OUT} --flame-model=", 1, ["--flame-model is empty"],
     ["generic_model.pkl or demo"]),
    ("flame-empty-path-evaluate", "evaluate -m {PRED} --data {DATA} -o {OUT} --flame-model=", 1,
     ["--flame-model is empty"], ["generic_model.pkl or demo"]),
    ("flame-empty-file", "export {B}/params.npy --out {OUT}/x.glb --flame-model {B}/empty.pkl", 1,
     ["empty (0 bytes)"], ["download flame 2020"]),
    ("flame-missing-file", "render {B}/params.npy --out {OUT}/x.mp4 --flame-model {B}/missing.pkl", 1,
     ["does not exist"], ["download flame 2020"]),
    ("flame-wrong-kind-checkpoint", "to-vertices {B}/params.npy --out {OUT} --flame-model {B}/small.pt", 1,
     ["not a readable pickle"], ["download flame 2020"]),
    ("flame-wrong-kind-dict", "to-vertices {B}/params.npy --out {OUT} --flame-model {B}/dict.pkl", 1,
     ["is not a flame model", "missing"], ["download flame 2020"]),
    ("templates-without-flag", "to-vertices {B}/params.npy --out {OUT} --flame-model demo --shape M003", 1,
     ["--shape m003"], ["needs --templates"]),
    ("templates-unknown-subject",
     "to-vertices {B}/params.npy --out {OUT} --flame-model demo --shape W777 --templates {B}/templates.pkl", 1,
     ["w777"], ["m003"]),
    # --- usage errors (exit 2) ---
    ("usage-workers-zero", "preprocess mead --animation-dir {B} --audio-dir {B} --out {OUT} --workers 0", 2,
     ["--workers"], ["greater than or equal to 1"]),
    ("usage-missing-out", "generate -m {PRED} {B}/good.wav", 2, ["missing option"], ["--out"]),
    ("usage-unknown-option", "render {B}/params.npy --out {OUT}/x.mp4 --fps-typo 3", 2, ["no such option"],
     ["--fps"]),
    ("usage-not-a-number", "train-prior --data {DATA} --out {OUT} --epochs many", 2, ["--epochs"],
     ["valid integer"]),
]


def _args(template: str, inp, out) -> list[str]:
    values = {"B": str(inp.root), "OUT": str(out), "PRED": str(inp.pred), "PRIOR": str(inp.prior),
              "DATA": str(inp.data)}
    return [token.format(**values) for token in template.split()]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, bad_inputs, cli, tmp_path):
    name, template, code, problem, fix = case
    if "cuda" in name:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    roots = [tmp_path, bad_inputs.root, bad_inputs.data, bad_inputs.prior, bad_inputs.pred]
    before = snapshot(*roots)
    r = cli("-q", *_args(template, bad_inputs, out), input=b"" if " - " in template else None)
    assert r.exit_code == code, f"{name}: exit {r.exit_code}\n{r.stderr}\n{r.stdout}"
    assert "Traceback" not in r.stderr and r.exception is None or isinstance(r.exception, SystemExit)
    if code == 1:
        line = error_line(r.stderr)
        assert has_words(line, problem), f"{name}: the problem {problem} is not named in: {line}"
        assert has_words(line, fix), f"{name}: the fix {fix} is not named in: {line}"
    else:
        text = r.stderr.replace("│", " ")
        assert "Usage:" in text and has_words(text, problem + fix), text
    assert snapshot(*roots) == before, f"{name}: files were written or changed"
    assert not temporaries(*roots)


def test_matrix_is_large_and_covers_the_commands():
    commands = {c[1].split()[0] for c in CASES}
    assert len(CASES) >= 30
    assert {"generate", "train-prior", "train-pred", "evaluate", "to-vertices", "render", "export",
            "import-official", "preprocess"} <= commands


def test_without_quiet_there_is_still_one_error_line(bad_inputs, cli, tmp_path):
    for template in ("generate -m {PRED} {B}/short.wav -o {OUT}", "train-prior --data {B}/data_corrupt --out {OUT}"):
        r = cli(*_args(template, bad_inputs, tmp_path / "out"))
        assert r.exit_code == 1
        errors = [line for line in r.stderr.splitlines() if line.lower().lstrip("\r ").startswith(("error", "failed"))]
        assert len(errors) == 1, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("template", ["to-vertices {B}/nan.npy --out {OUT} --flame-model demo",
                                      "train-prior --data {DATA} --out {OUT} --config {B}/negative_lr.yaml"])
def test_debug_shows_the_traceback(template, bad_inputs, tmp_path):
    """--debug (a real process: the traceback is what Python prints for the uncaught exception)."""
    args = _args(template, bad_inputs, tmp_path / "out")
    r = subprocess.run([sys.executable, "-m", "probtalk3d_cli", "--debug", *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert not (tmp_path / "out").exists()
