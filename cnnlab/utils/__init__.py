"""The plumbing every part uses: errors a user can fix (`errors`), whole-or-nothing file
writes (`atomic`), the one way anything is printed (`console`), and the Keras backend and
machine a run sees (`environment`). Nothing here imports TensorFlow at import time."""
