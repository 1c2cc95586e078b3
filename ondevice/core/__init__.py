"""What every layer may import: errors, the shared vocabulary, tensor specs and sample files, lazy imports,
process isolation and scratch space. Nothing here imports another ondevice module outside core, and no
framework is imported at module level."""
