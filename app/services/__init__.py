"""The resolvers: keyword-only async functions that every door calls."""
