"""The client's parts: who awaits which job, and the subscription that tells them."""
