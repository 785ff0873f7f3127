"""Chat notifications: webhooks an admin registers, and the process that delivers events to them."""
