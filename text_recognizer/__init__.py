"""The Lab 1 text recognizer: data modules, models and Lightning training logic for MNIST-like images."""
