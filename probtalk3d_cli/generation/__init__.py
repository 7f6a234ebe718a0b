"""Speech -> motion generation (reference §4.5, §5.3, §6).

* `generate(...)` — files/folders/stdin + styles -> `.npy` files with JSON sidecars (the `generate` command).
* `generate_motion(model, audio, subject, emotion, intensity, num_samples, ...)` — one clip in memory ->
  [N, T, 53] denormalised motion; `synthesize` — several clips and styles at once.
* FaceDiffuser checkpoints (reference §10): `generate_vertices` / `synthesize_vertices` -> [N, T, V, 3] vertices.

Modules: `core` (sampling, windows, the engine), `jobs` (inputs, styles, seeds, shards), `api` (files).
"""

from probtalk3d_cli.generation.api import (
    Failure,
    GenerateResult,
    OutputFile,
    file_sha256,
    generate,
    load_model,
    read_input_audio,
)
from probtalk3d_cli.generation.core import (
    ClipRequest,
    Sampling,
    Window,
    generate_motion,
    plan_windows,
    sample_latents,
    style_indices,
    synthesize,
)
from probtalk3d_cli.generation.facediffuser import DiffusionSampling, generate_vertices, synthesize_vertices
from probtalk3d_cli.generation.jobs import (
    AudioSource,
    Job,
    StyleRequest,
    build_jobs,
    derive_seed,
    expand_inputs,
    job_generator,
    parse_shard,
    read_styles_csv,
    resolve_style,
    select_shard,
)

__all__ = [
    "generate", "GenerateResult", "OutputFile", "Failure", "load_model", "file_sha256", "read_input_audio",
    "generate_motion", "synthesize", "ClipRequest", "Sampling", "Window", "plan_windows", "sample_latents",
    "style_indices", "AudioSource", "Job", "StyleRequest", "build_jobs", "derive_seed", "expand_inputs",
    "job_generator", "parse_shard", "read_styles_csv", "resolve_style", "select_shard",
    "DiffusionSampling", "generate_vertices", "synthesize_vertices",
]
