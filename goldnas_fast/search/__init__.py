"""The GOLD-NAS search: host-side controller (pruning, lambda, recording, stopping), resource
regularizer, Pareto front, and the search loops that drive them."""
