"""Operator commands (`multiplane validate`, `multiplane doctor`): never imported on a CNI call."""
