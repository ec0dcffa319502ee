"""A feature transform that fails part-way through a build (crash-safety tests)."""


def fail_late(batch):
    if (batch["customer_id"] > 300).any():
        raise RuntimeError("injected failure")
    return batch
