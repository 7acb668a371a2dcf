"""Policy evaluation for `container-lock check` (the policy model and built-in policies are in the layer)."""
