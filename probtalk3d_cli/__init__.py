"""probtalk3d: speech-driven 3D facial animation (ProbTalk3D re-implementation) with one CLI.

Heavy modules (torch, transformers, smplx, pyrender) are imported lazily by the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
