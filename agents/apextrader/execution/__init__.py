"""ExecutionAgent: paper fills on real depth, guarded live orders -> order.filled / order.rejected."""
