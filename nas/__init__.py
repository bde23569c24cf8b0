"""The search job: configs, reward, the Ray driver loop, export, reports and the `spinenas` CLI."""
