"""The operator API's parts: who is an admin, the rate-limit bypass list, the runtime view."""
