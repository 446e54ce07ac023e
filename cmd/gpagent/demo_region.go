package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// regionTable is the seed's region table (TPC-H's), distributed by its key.
var regionTable = api.Table{
	Name:          "region",
	DistributedBy: "r_regionkey",
	DDL:           "CREATE TABLE region (r_regionkey integer PRIMARY KEY, r_name char(25) NOT NULL, r_comment varchar(152))",
}

const regionRows = `INSERT INTO region VALUES
 (0, 'AFRICA', 'lar deposits. blithely final packages cajole.'),
 (1, 'AMERICA', 'hs use ironic, even requests. s'),
 (2, 'ASIA', 'ges. thinly even pinto beans ca'),
 (3, 'EUROPE', 'ly final courts cajole furiously final excuse'),
 (4, 'MIDDLE EAST', 'uickly special accounts cajole carefully blithely close requests.')`

// seedRegion creates the region table through the agents and fills it
// through the coordinator, as a user would: the walkthrough selects it
// from the coordinator across a segment failover.
func seedRegion(ctx context.Context, c *api.Client, dir string) error {
	res, err := c.CreateTable(ctx, regionTable)
	if err != nil {
		return fmt.Errorf("create table region: %w", err)
	}
	if res.Existed {
		return nil
	}
	ci, err := c.ConnInfo(ctx, topology.CoordinatorContent)
	if err != nil {
		return err
	}
	var hosts, ports []string
	for _, h := range ci.Hosts {
		hosts = append(hosts, h.Address)
		ports = append(ports, strconv.Itoa(h.Port))
	}
	cs := fmt.Sprintf("host=%s port=%s user=%s dbname=%s target_session_attrs=read-write connect_timeout=5 passfile=%s",
		strings.Join(hosts, ","), strings.Join(ports, ","), ci.User, ci.DBName, filepath.Join(dir, "pgpass"))
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, cs)
	if err != nil {
		return fmt.Errorf("region: connect to the coordinator: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(cctx, regionRows); err != nil {
		return fmt.Errorf("region: insert through the coordinator: %w", err)
	}
	return nil
}
