"""The system under test: its topology and settings, its nodes (how a command reaches one, how its
services are managed, what can be done to the machine), and the providers that bring it up and down."""
