"""Triton serving of PANTHER: model-repository sources, export, and the local tritonserver.

Re-exports only the light parts (no torch import); the export lives in `triton_repo.export`
(`export_model_repository`), the torch runner in `triton_repo.runner`.
"""

from triton_repo.schema import MODELS, SPRM, USER_ENCODER
from triton_repo.server import LocalTriton, TritonServerError, TritonStatus

__all__ = ["MODELS", "SPRM", "USER_ENCODER", "LocalTriton", "TritonServerError", "TritonStatus"]
