SET SESSION lock_wait_timeout = 5;--> statement-breakpoint
ALTER TABLE `users` MODIFY COLUMN `full_name` varchar(201) NOT NULL;
