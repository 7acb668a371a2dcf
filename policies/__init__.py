"""Policy files and their evaluation (see docs/ and the policy issue)."""
