"""Credentials (Token, JWT, Bearer) and policies (who may touch which engine)."""
