from text_recognizer.models.mlp import MLP

MODELS = {"MLP": MLP}

__all__ = ["MODELS", "MLP"]
