"""The search job's engine: the driver (propose, dedup, submit, report, finish), the trial loop and the trial's body,
runners (where trials run), schedulers (early stopping), the lease, signals, fingerprints, rewards and fault
injection."""
