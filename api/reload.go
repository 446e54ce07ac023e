package api

import (
	"context"
	"net/http"
)

// ReloadResult is what an agent did with its re-read config file: the
// fields it applied, and those that changed but need a restart (left as
// they were).
type ReloadResult struct {
	Applied     []string `json:"applied"`
	NeedRestart []string `json:"need_restart"`
}

// Reload asks the agent at the client's address (not the leader) to
// re-read its config file, as SIGHUP does.
func (c *Client) Reload(ctx context.Context) (*ReloadResult, error) {
	var r ReloadResult
	return &r, c.do(ctx, http.MethodPost, "/v1/reload", struct{}{}, &r)
}
