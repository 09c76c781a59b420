"""drn-cd: deep resistive networks solved exactly by coordinate descent."""

from .constants import VT
from .elements import Ideal, Linear, Pwl, Shockley
from .network import Amplifier, Network, NetworkFormatError, load_network, random_network, save_network
from .solver import NotConvergedError, Solution, energy, kcl, load_states, max_branch_current, solve

__all__ = [
    "VT", "Ideal", "Linear", "Pwl", "Shockley", "Amplifier", "Network", "NetworkFormatError", "load_network",
    "random_network", "save_network", "NotConvergedError", "Solution", "energy", "kcl", "load_states",
    "max_branch_current", "solve",
]
