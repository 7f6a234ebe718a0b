"""Golden slice of the bundled demo model's deterministic output (tests/integration/test_demo.py compares with it).

Regenerate on purpose, after `make demo-train` produced a new probtalk3d_cli/assets/demo_model.pt, and commit both:

    .venv/bin/python tests/golden/demo_slice.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN_FILE = HERE / "demo_slice.npz"
CLIP = "M002_004_3_1"  # surprised, medium: a TEST-split sentence of the default synthetic corpus (seed 0)
STYLE = ("M002", "surprised", "medium")
FRAME_STEP = 4  # every 4th frame is stored (all 53 columns)


def compute() -> dict[str, np.ndarray]:
    """Deterministic (nearest-code) fp32 motion [T, 53] of the bundled model on the synthesized CLIP, sliced."""
    from probtalk3d_cli.data.schema import parse_key
    from probtalk3d_cli.data.synthetic import synthesize_clip
    from probtalk3d_cli.generation import Sampling, generate_motion, load_model

    _, audio = synthesize_clip(parse_key(CLIP), seed=0)
    model, info = load_model("demo")
    motion = generate_motion(model, audio, *STYLE, num_samples=1, sampling=Sampling(deterministic=True),
                             precision="fp32")[0]
    return {"motion": motion[::FRAME_STEP].astype(np.float32), "frames": np.array(motion.shape[0]),
            "checkpoint_sha256": np.array(info["sha256"])}


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from probtalk3d_cli.io import atomic_path

    values = compute()
    with atomic_path(GOLDEN_FILE) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **values)
    print(f"wrote {GOLDEN_FILE} ({values['motion'].shape[0]} frames of {int(values['frames'])}, "
          f"checkpoint {values['checkpoint_sha256']})")


if __name__ == "__main__":
    main()
