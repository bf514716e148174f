package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgStatementsSetting loads pg_stat_statements into the benchmark's
// PostgreSQL (-pg-statements).
var pgStatementsSettings = []string{"shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track_planning=on"}

// enablePGStatements creates the pg_stat_statements extension in the
// database of dsn and clears its counts.
func enablePGStatements(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()`)
	return err
}

// pgStatementsSection reads the statements that took the server's time in
// the database of dsn, the most expensive first.
func pgStatementsSection(dsn string) (section, error) {
	sec := section{
		title: "gateway-pg: statements by total execution time (pg_stat_statements, -pg-statements)",
		head:  []string{"calls", "total ms", "mean µs", "plans", "plan ms", "rows/call", "statement"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return sec, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT calls, total_exec_time, mean_exec_time, plans, total_plan_time, rows,
	left(regexp_replace(query, '\s+', ' ', 'g'), 100)
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC LIMIT 12`)
	if err != nil {
		return sec, err
	}
	defer rows.Close()
	for rows.Next() {
		var calls, plans, n int64
		var total, mean, planMs float64
		var q string
		if err := rows.Scan(&calls, &total, &mean, &plans, &planMs, &n, &q); err != nil {
			return sec, err
		}
		sec.rows = append(sec.rows, []string{fmt.Sprint(calls), fmt.Sprintf("%.0f", total), fmt.Sprintf("%.0f", mean*1e3),
			fmt.Sprint(plans), fmt.Sprintf("%.0f", planMs), fmt.Sprintf("%.1f", float64(n)/float64(max(calls, 1))), q})
	}
	sec.notes = append(sec.notes, "plans = times the statement was planned (a prepared statement planned at every execution: custom plans); total ms is execution only: parsing, commits (the WAL flush) and the protocol are not in it; includes the warm-up")
	return sec, rows.Err()
}
