//! Proofs of the deployment files (issue 13), run by `cargo test --workspace`
//! with the tools `cargo xtask deploy-tools` provisions: `lint` runs
//! hadolint, actionlint and shellcheck over every Dockerfile, workflow and
//! shell script of the repository; `minikube` runs the Minikube scripts'
//! dry runs and the pieces of `smoke.sh` that need no cluster.

#[cfg(test)]
mod lint;
#[cfg(test)]
mod minikube;
