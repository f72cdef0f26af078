"""Device drivers (drivers/): zram."""
