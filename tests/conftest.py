"""Shared test setup: tests run on a small shared CPU, so keep torch to one thread for steady timing."""

import torch

torch.set_num_threads(1)
