"""Operating the platform: external commands (Runner), images, k3d, Helm deploys, status, diagnostics."""
