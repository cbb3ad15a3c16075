"""Inference with trained checkpoints: the streaming predictor (:mod:`.predictor`), the
prediction files it writes (:mod:`.writers`: Kaggle CSV, Parquet) and TorchScript / ONNX export
(:mod:`.export`)."""

from vidistill.inference.predictor import Predictor, predict_to_file

__all__ = ["Predictor", "predict_to_file"]
