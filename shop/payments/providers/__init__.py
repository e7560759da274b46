"""One adapter per payment provider, all behind `base.Provider`."""
