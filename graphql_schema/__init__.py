"""The GraphQL door (Strawberry): types, inputs, queries, mutations, subscriptions."""
