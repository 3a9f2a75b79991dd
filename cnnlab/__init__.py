"""cnnlab: image-classification experiments with Keras, from one YAML file to a trained run."""

import os

__version__ = "0.1.0"

# Keras 3 picks its backend at first import; cnnlab is built and tested on TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter (oneDNN notices, CUDA probing) hides the messages that matter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
