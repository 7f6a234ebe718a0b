"""Networks of both stages: shared layers, quantiser, motion prior (VQ-VAE / VAE), HuBERT audio encoder, predictor;
and the FaceDiffuser comparison model.

Importing this package imports torch (the CLI imports it lazily); transformers is imported only when an
AudioEncoder is built.
"""

from probtalk3d_cli.models.audio import AudioEncoder, build_audio_encoder
from probtalk3d_cli.models.facediffuser import DiffusionSchedule, FaceDiffuser, load_facediffuser
from probtalk3d_cli.models.official_keys import (
    build_official_predictor,
    build_official_prior,
    map_official_predictor,
    map_official_prior,
)
from probtalk3d_cli.models.predictor import (
    LatentPredictor,
    MotionPredictor,
    PredictorOutput,
    build_predictor,
    load_predictor,
    save_predictor,
)
from probtalk3d_cli.models.prior import MotionPrior, PriorOutput, build_prior, load_prior, save_prior
from probtalk3d_cli.models.quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "AudioEncoder", "build_audio_encoder", "LatentPredictor", "MotionPredictor", "PredictorOutput", "build_predictor",
    "load_predictor", "save_predictor", "MotionPrior", "PriorOutput", "build_prior", "load_prior", "save_prior",
    "QuantizerOutput", "VectorQuantizer", "map_official_prior", "map_official_predictor", "build_official_prior",
    "build_official_predictor", "FaceDiffuser", "DiffusionSchedule", "load_facediffuser",
]
