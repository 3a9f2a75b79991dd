"""cnnlab: image-classification experiments with Keras, from one YAML file to a trained run."""

import os

__version__ = "0.1.0"

# Keras 3 picks its backend at first import: TensorFlow unless KERAS_BACKEND says otherwise;
# a command sets a config's `backend` before it loads Keras (environment.start_backend_quietly).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter (oneDNN notices, CUDA probing) hides the messages that matter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
