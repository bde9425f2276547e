"""FeatureEngineer agent: indicators on closed bars -> features.computed."""
