"""The data layer: the canonical schema, readers and importers, fetching known datasets, splits, the test
period and its segments, item sentences and sampling. pandas and numpy only."""
