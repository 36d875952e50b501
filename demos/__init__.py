"""Runnable demo apps built on resrank-rag (document QA and a chatbot); run from a source checkout."""
