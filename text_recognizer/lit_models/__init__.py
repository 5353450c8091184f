from text_recognizer.lit_models.base import BaseLitModel

__all__ = ["BaseLitModel"]
