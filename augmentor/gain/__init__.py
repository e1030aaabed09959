"""`augmentor bench`: the classifier gain of synthetic data against real data and honest controls."""
