// The app's data model: row types come from the generated client
// (src/generated, made by `lattice generate` from the Postgres schema);
// the enums' labels are listed below in display order.
import type { IssuePriority, IssueStatus } from '../generated';
export type { Project, Issue, Comment } from '../generated';

export type Status = IssueStatus;
export type Priority = IssuePriority;

export const STATUSES: readonly Status[] = ['backlog', 'todo', 'in_progress', 'done', 'canceled'];
export const STATUS_LABEL: Record<Status, string> = {
  backlog: 'Backlog',
  todo: 'Todo',
  in_progress: 'In progress',
  done: 'Done',
  canceled: 'Canceled',
};

export const PRIORITIES: readonly Priority[] = ['urgent', 'high', 'medium', 'low', 'none'];
export const PRIORITY_LABEL: Record<Priority, string> = {
  urgent: 'Urgent',
  high: 'High',
  medium: 'Medium',
  low: 'Low',
  none: 'No priority',
};

// SQL that sorts priorities by urgency (text in the database), over issue i.
export const PRIORITY_RANK = `CASE i.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END`;
export const STATUS_RANK = `CASE i.status WHEN 'backlog' THEN 0 WHEN 'todo' THEN 1 WHEN 'in_progress' THEN 2 WHEN 'done' THEN 3 ELSE 4 END`;
