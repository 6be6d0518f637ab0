"""The CNI protocol as pure data: versions, environment and CNI_ARGS, configs, results."""
