"""RiskManager agent: the final gate -> order.approved / signal.rejected."""
