"""Pure rules: event kinds and their validation, periods and buckets, stats queries. No I/O."""
