// The lab's pod sandbox ("pause") program: containerd starts one per pod and it holds the
// pod's namespaces until the kubelet stops the pod. Kubernetes' own pause image comes from a
// registry the lab does not use, so lab/tandem_lab/kubelet.py builds this one and wraps it in a
// one-layer OCI image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			// As PID 1 of a pod without hostPID: reap orphans so they do not stay zombies.
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
