"""The weights registry now lives in :mod:`dokuei.weights` (domain code needs it too); names kept here."""

from dokuei.weights import WeightsCheck, WeightSpec, check_weights, sha256_file

__all__ = ["WeightSpec", "WeightsCheck", "check_weights", "sha256_file"]
