SET SESSION lock_wait_timeout = 5;--> statement-breakpoint
ALTER TABLE `users` ADD `full_name` varchar(201);
